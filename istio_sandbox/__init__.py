"""A simulated Kubernetes cluster with an Istio mesh, for tests, demos and benchmarks."""
