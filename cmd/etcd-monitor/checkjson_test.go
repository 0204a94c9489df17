package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
	"github.com/etcd-monitor/etcd-monitor/etcdconn"
	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
	"github.com/etcd-monitor/etcd-monitor/snapshot"
)

// jsonShape records every path of a decoded JSON value with its kind, array elements merged
// under "[]", so that two documents with the same fields and types have the same shape.
func jsonShape(v any, path string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		out[path] = "object"
		for k, e := range x {
			jsonShape(e, path+"."+k, out)
		}
	case []any:
		out[path] = "array"
		for _, e := range x {
			jsonShape(e, path+"[]", out)
		}
	case nil:
		out[path] = "null"
	default:
		out[path] = fmt.Sprintf("%T", x)
	}
}

// check --output=json and /api/v1/cluster/status describe a member in one shape: the same
// fields, names, units and types.
func TestCheckJSONMemberIsTheAPIMember(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := "--etcd.endpoints=" + strings.Join(c.Endpoints(), ",")
	runCheckUntil(t, 0, eps)
	srv := httptest.NewServer(testExporterHandler(t, c.Endpoints()))
	defer srv.Close()

	out := captureStdout(t, func() { run([]string{"check", eps, "--output=json"}) })
	var check struct {
		Members []any `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &check); err != nil || len(check.Members) != 3 {
		t.Fatalf("check --output=json: %v\n%s", err, out)
	}
	resp, err := srv.Client().Get(srv.URL + "/api/v1/cluster/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var api struct {
		Data struct {
			Members []any `json:"members"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&api); err != nil || len(api.Data.Members) != 3 {
		t.Fatalf("status API: %v", err)
	}
	checkShape, apiShape := map[string]string{}, map[string]string{}
	jsonShape(check.Members, "members", checkShape)
	jsonShape(api.Data.Members, "members", apiShape)
	var diff []string
	for p, k := range checkShape {
		if apiShape[p] != k {
			diff = append(diff, fmt.Sprintf("%s: check %s, API %s", p, k, apiShape[p]))
		}
	}
	for p, k := range apiShape {
		if _, ok := checkShape[p]; !ok {
			diff = append(diff, fmt.Sprintf("%s: check -, API %s", p, k))
		}
	}
	slices.Sort(diff)
	if len(diff) > 0 {
		t.Errorf("member shapes differ:\n%s", strings.Join(diff, "\n"))
	}

	// For one snapshot, the two are the same members, value for value.
	taker, err := snapshot.NewTaker(etcdconn.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := taker.Take(ctx, clusterapi.Needs)
	checkJSON, _ := json.Marshal(buildCheckReport(s).Members)
	apiJSON, _ := json.Marshal(clusterapi.ClusterStatusOf(s).Members)
	if string(checkJSON) != string(apiJSON) {
		t.Errorf("same snapshot, different members:\ncheck %s\nAPI   %s", checkJSON, apiJSON)
	}
}
