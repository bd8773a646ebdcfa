# MLflow (docs/mlflow.md). The store and the profile's experiment are created once, here,
# before any job starts: jobs creating a fresh SQLite store or an experiment at the same time
# race. Tracking never stops the workflow: tracking-init only warns if the store is not ready.


onstart:
    shell("cdrepro tracking-init")
