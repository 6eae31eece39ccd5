//! The Kubernetes driver: controllers that reconcile the four kinds into Pods, Services, PVCs and
//! NetworkPolicies, the conversion webhook, metrics and leader election.
