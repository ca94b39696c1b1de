package auth_test

import "github.com/sluicehq/sluice/auth/internal/authtest"

// The helpers shared with the other package's tests (authtest), by their
// short names.
const (
	tenantA = authtest.TenantA
	tenantB = authtest.TenantB
	apiKey1 = authtest.APIKey1
	apiKey2 = authtest.APIKey2
)

type (
	config = authtest.Config
	clock  = authtest.Clock
)

var (
	secret      = authtest.Secret
	epoch       = authtest.Epoch
	keys        = authtest.Keys
	newClock    = authtest.NewClock
	claims      = authtest.Claims
	set         = authtest.Set
	del         = authtest.Del
	sign        = authtest.Sign
	hs256       = authtest.HS256
	hs256Raw    = authtest.HS256Raw
	writeFile   = authtest.WriteFile
	pemFile     = authtest.PEMFile
	apiKeysFile = authtest.APIKeysFile
	newAuth     = authtest.NewAuth
	request     = authtest.Request
	code        = authtest.Code
	noLeak      = authtest.NoLeak
	errDown     = authtest.ErrDown
)

type failing = authtest.Failing
