"""What the sandbox knows of Istio, written from upstream's charts and code, not the product's.

The sandbox is the product's test oracle: its idea of the objects an install renders, the
labels that route injection and the annotations an injected pod carries must come from
upstream (istio/istio ``manifests/charts``, ``pkg/kube/inject``, ``istioctl/pkg/tag``), so
that a wrong assumption in the product shows up as a disagreement in a test.
"""
