package jwtauth_test

import "github.com/sluicehq/sluice/auth/internal/authtest"

// The helpers shared with the other package's tests (authtest), by their
// short names.
const (
	tenantA = authtest.TenantA
	tenantB = authtest.TenantB
)

type (
	config = authtest.Config
)

var (
	secret      = authtest.Secret
	epoch       = authtest.Epoch
	keys        = authtest.Keys
	claims      = authtest.Claims
	set         = authtest.Set
	del         = authtest.Del
	sign        = authtest.Sign
	hs256       = authtest.HS256
	hs256Raw    = authtest.HS256Raw
	pemFile     = authtest.PEMFile
	apiKeysFile = authtest.APIKeysFile
	newAuth     = authtest.NewAuth
	request     = authtest.Request
	code        = authtest.Code
	noLeak      = authtest.NoLeak
	mustEC      = authtest.MustEC
)
