package discovery

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func entry(id, addr string, port int, created uint64, meta map[string]string, tags []string, status string) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &api.AgentService{ID: id, Address: addr, Port: port, Meta: meta, Tags: tags, CreateIndex: created},
		Checks: api.HealthChecks{
			{CheckID: "serfHealth", Status: api.HealthPassing},
			{CheckID: "service:" + id, Status: status},
		},
	}
}

func TestIndexEntries(t *testing.T) {
	t.Parallel()
	by, n := indexEntries([]*api.ServiceEntry{
		entry("a", "10.0.0.9", 9000, 5, map[string]string{"workspace_id": "w1", "alloc_id": "al-a"}, nil, api.HealthPassing),
		entry("b", "", 9001, 7, nil, []string{"workspace-w1", "other"}, api.HealthPassing),
		entry("c", "10.0.0.9", 9002, 9, map[string]string{"workspace_id": "w1"}, nil, api.HealthCritical), // failing
		entry("d", "10.0.0.9", 0, 9, map[string]string{"workspace_id": "w1"}, nil, api.HealthPassing),     // no port
		entry("e", "fe80::1", 9003, 3, map[string]string{"workspace_id": "w2"}, []string{"workspace-w3"}, api.HealthPassing),
		entry("f", "10.0.0.9", 9004, 3, nil, []string{"workspace-", "web"}, api.HealthPassing), // names no workspace
		nil,
		{Service: nil},
	})
	if n != 3 {
		t.Errorf("instances = %d, want 3", n)
	}
	w1 := by["w1"]
	if len(w1) != 2 || w1[0].serviceID != "b" || w1[0].addr != "10.0.0.1:9001" || w1[1].addr != "10.0.0.9:9000" || w1[1].allocID != "al-a" {
		t.Errorf("w1 = %+v; want b (newest, node address) then a", w1)
	}
	if len(by["w2"]) != 1 || by["w2"][0].addr != "[fe80::1]:9003" || len(by["w3"]) != 1 {
		t.Errorf("w2 = %+v, w3 = %+v", by["w2"], by["w3"])
	}
	if len(by) != 3 {
		t.Errorf("workspaces = %v", by)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, 2*time.Second
	for n, want := range map[int]time.Duration{1: lo, 2: 2 * lo, 3: 4 * lo, 5: 16 * lo, 6: hi, 60: hi} {
		for range 50 {
			if got := backoff(lo, hi, n); got < want/2 || got > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, got, want/2, want)
			}
		}
	}
}
