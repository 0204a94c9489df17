// Package helm holds the Helm chart etcd-monitor (docs/kubernetes.md); its tests render the chart
// with the pinned helm and check the objects against each other and the binary.
package helm
