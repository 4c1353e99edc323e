"""Istio knowledge shared by activities, the CLI and the sandbox: names, labels, versions.

Pure code only (no I/O), so workflows may import it too.
"""
