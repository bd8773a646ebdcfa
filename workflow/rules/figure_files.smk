# The figures' paths (cdrepro.figures.paths), for workflow/rules/figures.smk.
from cdrepro.figures.paths import HEAD_FIGURES, FigurePaths, files_of, head_runs, method_figure_datasets

FIGURES = FigurePaths.of(PATHS)
HEAD_RUNS = [run_id(run) for run in head_runs(config)]
METHOD_FIGURE_DATASETS = method_figure_datasets(config)


def figure_files(stem, caption, category, subcategory):
    """A figure's PNG (in the report, captioned), PDF and CSV."""
    png, *rest = [str(path) for path in files_of(stem)]
    return [report(png, caption=caption, category=category, subcategory=subcategory), *rest]
