package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	sluiceserver "github.com/sluicehq/sluice/server"
)

// reservedClaims are set by token's own flags.
var reservedClaims = map[string]string{
	"sub": "--user", "user_id": "--user", "tenant_id": "--tenant", "iat": "--ttl", "exp": "--ttl",
}

// claimFlags collects --claim k=v, typed.
type claimFlags map[string]any

func (c claimFlags) String() string { return "" }

func (c claimFlags) Set(s string) error {
	k, v, err := parseClaim(s)
	if err != nil {
		return err
	}
	if _, dup := c[k]; dup {
		return fmt.Errorf("claim %q given twice", k)
	}
	c[k] = v
	return nil
}

// parseClaim reads k=v. The value is typed when it is JSON (3, 1.5, true,
// null, ["a","b"], {"a":1}, "quoted"), else it is the string as written.
func parseClaim(s string) (string, any, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", nil, fmt.Errorf("claim %q: want name=value, e.g. role=admin", s)
	}
	if flag, ok := reservedClaims[k]; ok {
		return "", nil, fmt.Errorf("claim %q is set by %s", k, flag)
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err == nil && !dec.More() {
		if _, err := dec.Token(); err == io.EOF {
			return k, val, nil
		}
	}
	return k, v, nil
}

// signer is the key `sluice token` signs with.
type signer struct {
	method jwt.SigningMethod
	key    any
	what   string // where the key came from, for the message on stderr
}

// token is `sluice token`: a JWT for a user of a tenant, signed with the
// configured key, or a new API key with its SLUICE_API_KEYS_FILE entry.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: sluice token --user U --tenant T [--ttl D] [--claim k=v …]
       sluice token --api-key --user U --tenant T

Prints a JWT signed with --private-key / SLUICE_JWT_PRIVATE_KEY (RS*, PS*, ES*,
EdDSA), else SLUICE_JWT_SECRET (HS256), else the dev secret that sluice --dev
keeps. iss and aud are set from SLUICE_JWT_ISSUER and SLUICE_JWT_AUDIENCE.

`)
		fs.PrintDefaults()
	}
	user := fs.String("user", "", "user id: the sub claim (required)")
	tenant := fs.String("tenant", "", "tenant id, a lowercase canonical UUID: the tenant_id claim (required)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime: exp is now plus this")
	claims := claimFlags{}
	fs.Var(claims, "claim", "another claim name=value, repeatable; the value is typed when it is JSON (3, true, [\"a\"]), else a string")
	privateKey := fs.String("private-key", getenv("SLUICE_JWT_PRIVATE_KEY"), "PEM private key file (PKCS #8, PKCS #1 or SEC 1) to sign with ($SLUICE_JWT_PRIVATE_KEY)")
	alg := fs.String("alg", "", "signing algorithm (default: HS256 with a secret, RS256 with an RSA key, ES256/384/512 by curve, EdDSA)")
	apiKey := fs.Bool("api-key", false, "print a new API key and the entry to add to SLUICE_API_KEYS_FILE instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	if err := channel.CheckTenant(*tenant); err != nil {
		return fmt.Errorf("token: --tenant: %w", err)
	}
	if *apiKey {
		if len(claims) > 0 {
			return errors.New("token: --claim does not apply to an API key (it names only its user and tenant)")
		}
		return printAPIKey(stdout, stderr, *user, *tenant)
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be more than zero")
	}
	s, err := loadSigner(*privateKey, *alg, getenv)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	now := time.Now()
	mc := jwt.MapClaims{}
	for k, v := range claims {
		mc[k] = v
	}
	if v := getenv("SLUICE_JWT_ISSUER"); v != "" {
		if _, set := mc["iss"]; !set {
			mc["iss"] = v
		}
	}
	if v := getenv("SLUICE_JWT_AUDIENCE"); v != "" {
		if _, set := mc["aud"]; !set {
			mc["aud"] = v
		}
	}
	mc["sub"], mc["tenant_id"] = *user, *tenant
	mc["iat"], mc["exp"] = now.Unix(), now.Add(*ttl).Unix()
	tok, err := jwt.NewWithClaims(s.method, mc).SignedString(s.key)
	if err != nil {
		return fmt.Errorf("token: signing: %w", err)
	}
	fmt.Fprintf(stderr, "signed with %s (%s), expires %s\n", s.what, s.method.Alg(), now.Add(*ttl).UTC().Format(time.RFC3339))
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// loadSigner picks the signing key: a private key file, else
// SLUICE_JWT_SECRET, else the dev secret.
func loadSigner(privateKey, alg string, getenv func(string) string) (signer, error) {
	if privateKey != "" {
		return privateKeySigner(privateKey, alg)
	}
	secret, what := getenv("SLUICE_JWT_SECRET"), "SLUICE_JWT_SECRET"
	if secret == "" {
		path, err := sluiceserver.DefaultDevStateFile()
		if err != nil {
			return signer{}, fmt.Errorf("no signing key: set SLUICE_JWT_SECRET or SLUICE_JWT_PRIVATE_KEY (%v)", err)
		}
		st, err := sluiceserver.ReadDevState(path)
		if errors.Is(err, fs.ErrNotExist) {
			return signer{}, fmt.Errorf("no signing key: set SLUICE_JWT_SECRET (HS256) or SLUICE_JWT_PRIVATE_KEY / --private-key (RS*, PS*, ES*, EdDSA), "+
				"or run sluice --dev once: it keeps its dev secret in %s", path)
		}
		if err != nil {
			return signer{}, err
		}
		secret, what = st.JWTSecret, "the dev secret of "+path
	}
	if alg == "" {
		alg = "HS256"
	}
	m, ok := jwt.GetSigningMethod(alg).(*jwt.SigningMethodHMAC)
	if !ok {
		return signer{}, fmt.Errorf("--alg %q: a secret signs HS256, HS384 or HS512", alg)
	}
	return signer{method: m, key: []byte(secret), what: what}, nil
}

// privateKeySigner reads a PEM private key and checks alg against it.
func privateKeySigner(path, alg string) (signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return signer{}, fmt.Errorf("private key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return signer{}, fmt.Errorf("private key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return signer{}, fmt.Errorf("private key %s: a %q PEM block is not a private key (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", path, block.Type)
	}
	if err != nil {
		return signer{}, fmt.Errorf("private key %s: %w", path, err)
	}
	var fits []string // algorithms this key signs, the default first
	switch k := key.(type) {
	case *rsa.PrivateKey:
		fits = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		case elliptic.P521():
			fits = []string{"ES512"}
		}
	case ed25519.PrivateKey:
		fits = []string{"EdDSA"}
	}
	if len(fits) == 0 {
		return signer{}, fmt.Errorf("private key %s: an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key is needed", path)
	}
	if alg == "" {
		alg = fits[0]
	}
	m := jwt.GetSigningMethod(alg)
	if m == nil || !slices.Contains(fits, alg) {
		return signer{}, fmt.Errorf("--alg %q does not fit the key in %s (it signs %s)", alg, path, strings.Join(fits, ", "))
	}
	if _, ok := key.(crypto.Signer); !ok {
		return signer{}, fmt.Errorf("private key %s: cannot sign", path)
	}
	return signer{method: m, key: key, what: path}, nil
}

// printAPIKey prints a new API key, then the SLUICE_API_KEYS_FILE entry that
// accepts it (only its hash), each on a line of its own.
func printAPIKey(stdout, stderr io.Writer, user, tenant string) error {
	key := "sluice-" + rand.Text() + rand.Text() // 256 random bits
	entry := struct {
		Hash   string `json:"hash"`
		User   string `json:"user"`
		Tenant string `json:"tenant"`
	}{auth.HashAPIKey(key), user, tenant}
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(entry); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "The first line is the key (shown only now): the client sends \"Authorization: Api-Key <key>\".\n"+
		"The second goes into the JSON array of SLUICE_API_KEYS_FILE; restart Sluice to load it.")
	_, err := fmt.Fprint(stdout, key+"\n"+line.String())
	return err
}
