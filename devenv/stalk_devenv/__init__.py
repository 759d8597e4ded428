"""A local stand-in for a Kubernetes cluster with real parts, for tests and the demo.

Real Redis and Sentinel processes, a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, KWOK for nodes) run as local processes, and a
"process kubelet" runs the containers of selected pods as local processes. Nothing here
ships in the images.
"""
