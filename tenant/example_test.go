package tenant_test

import (
	"context"
	"fmt"

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
