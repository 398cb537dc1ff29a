"""SageMaker serving, packaging and deployment; Kubernetes manifests for the service."""
