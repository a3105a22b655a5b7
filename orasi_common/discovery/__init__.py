"""Finding upstream endpoints: static lists and DNS (etcd comes with the control plane)."""
