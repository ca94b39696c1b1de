package tenant_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/tenant"
)

func ExampleGate_Check() {
	p := auth.Principal{User: "alice", Tenant: "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", Kind: auth.KindJWT}
	own := channel.MustMake("scan-progress", "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "42")
	foreign := channel.MustMake("scan-progress", "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13", "42")

	var g tenant.Gate // Token membership: the token's tenant claim is trusted
	fmt.Println(g.Check(context.Background(), p, []channel.Name{own}))

	err := g.Check(context.Background(), p, []channel.Name{own, foreign})
	if prob, ok := problem.As(err); ok {
		fmt.Println(prob.Status, prob.Code)
	}
	// Output:
	// <nil>
	// 403 foreign_tenant
}

func ExampleFromSpec() {
	dir, _ := os.MkdirTemp("", "sluice")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "members.json")
	_ = os.WriteFile(path, []byte(`{"alice": ["3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"]}`), 0o600)

	m, closer, err := tenant.FromSpec(context.Background(), "file:"+path, tenant.PostgresConfig{}, tenant.HTTPConfig{})
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
