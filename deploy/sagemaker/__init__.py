"""SageMaker: serving handler, local container server, packaging and deployment."""
