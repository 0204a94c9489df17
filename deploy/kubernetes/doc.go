// Package kubernetes holds the Kubernetes manifests for etcd-monitor (docs/demo.md#kubernetes);
// its test checks that they parse and reference each other and the binary consistently.
package kubernetes
