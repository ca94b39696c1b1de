package source_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/tenant"
	"github.com/sluicehq/sluice/tenant/postgres"
	"github.com/sluicehq/sluice/tenant/source"
)

func ExampleFromSpec() {
	dir, _ := os.MkdirTemp("", "sluice")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "members.json")
	_ = os.WriteFile(path, []byte(`{"alice": ["3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"]}`), 0o600)

	m, closer, err := source.FromSpec(context.Background(), "file:"+path, postgres.Config{}, tenant.HTTPConfig{})
	if err != nil {
		panic(err)
	}
	defer closer.Close()

	ctx := context.Background()
	for _, user := range []string{"alice", "bob"} {
		p := auth.Principal{User: user, Tenant: "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"}
		ok, _ := m.IsMember(ctx, p, p.Tenant)
		fmt.Println(user, ok)
	}
	// Output:
	// alice true
	// bob false
}
