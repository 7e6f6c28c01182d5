"""mlship's model server: SageMaker's container contract (GET /ping, POST /invocations on 8080)
calling the same inference.py handlers as SageMaker, with SageMaker-format data capture."""
