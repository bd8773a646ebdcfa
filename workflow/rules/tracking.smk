# MLflow (docs/mlflow.md). The store and the profile's experiment are created once, here,
# before any job starts: jobs creating a fresh SQLite store or an experiment at the same time
# race. Tracking never stops the workflow: tracking-init only warns if the store is not ready.


onstart:
    shell("cdrepro tracking-init")


# Once the whole profile is done (every output of `all`: the tables and the figures), its
# summary run: the tables, the figures and every run's scores in one MLflow run
# (src/cdrepro/tracking_summary.py). A handler, not a rule: it makes no file for a rule to
# output (its product is in MLflow, a side channel), and a rule of `all` would need its twin
# stage in dvc.yaml. Its output goes to the terminal and to TRACKING_SUMMARY_LOG; a failure
# is a warning there, never a failed workflow.
TRACKING_SUMMARY_LOG = LOGS / "tracking_summary.log"


onsuccess:
    if all(os.path.exists(path) for path in rules.all.input):
        shell("cdrepro tracking-summary 2>&1 | tee {TRACKING_SUMMARY_LOG} || true")
