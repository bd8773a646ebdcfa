# The figures' paths (cdrepro.figures.paths), for workflow/rules/figures.smk.
from cdrepro.figures.paths import HEAD_FIGURES, FigurePaths, comparison_figure_datasets, files_of, head_runs

FIGURES = FigurePaths.of(PATHS)
HEAD_RUNS = [run_id(run) for run in head_runs(config)]
COMPARISON_FIGURE_DATASETS = comparison_figure_datasets(config)


def figure_files(stem, caption, category, subcategory):
    """A figure's PNG (in the report, captioned), PDF and CSV."""
    png, *rest = [str(path) for path in files_of(stem)]
    # Named first: Snakemake's parser reads a line that starts with "report(" as the keyword.
    shown = report(png, caption=caption, category=category, subcategory=subcategory)
    return [shown, *rest]
