package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluicehq/sluice/channel"
)

// apiKey is one entry of the API key file.
type apiKey struct {
	hash   [sha256.Size]byte
	user   string
	tenant string
}

// apiKeys holds API keys by the SHA-256 of the key.
//
// Lookup hashes the presented key and looks the digest up in a map. The map
// access branches on the digest, not on the key: learning how long a lookup
// took tells an attacker about the digest of their own guess, which reveals
// nothing about any stored key (finding a key from its digest means inverting
// SHA-256). The stored digest is then compared with crypto/subtle, so no
// byte-by-byte comparison of secret material happens anywhere.
type apiKeys map[[sha256.Size]byte]apiKey

// HashAPIKey returns the form in which an API key is stored in the API key
// file: "sha256:" followed by the lowercase hex SHA-256 of the key.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// loadAPIKeys reads and checks the API key file. Errors name the entry (from
// 1) and never show a hash.
func loadAPIKeys(path string) (apiKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: API key file: %w", err)
	}
	type entry struct {
		Hash   string `json:"hash"`
		User   string `json:"user"`
		Tenant string `json:"tenant"`
	}
	var entries []entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("auth: API key file %s: want a JSON array of {\"hash\",\"user\",\"tenant\"}: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("auth: API key file %s: data after the JSON array", path)
	}
	keys := make(apiKeys, len(entries))
	for i, e := range entries {
		n := i + 1
		hexDigest, ok := strings.CutPrefix(e.Hash, "sha256:")
		var k apiKey
		if !ok || len(hexDigest) != 2*sha256.Size {
			return nil, fmt.Errorf("auth: API key file %s: entry %d: hash must be \"sha256:\" followed by 64 hex digits", path, n)
		}
		if _, err := hex.Decode(k.hash[:], []byte(hexDigest)); err != nil {
			return nil, fmt.Errorf("auth: API key file %s: entry %d: hash must be \"sha256:\" followed by 64 hex digits", path, n)
		}
		if e.User == "" {
			return nil, fmt.Errorf("auth: API key file %s: entry %d: user is empty", path, n)
		}
		if err := channel.CheckTenant(e.Tenant); err != nil {
			return nil, fmt.Errorf("auth: API key file %s: entry %d (user %q): tenant: %w", path, n, e.User, err)
		}
		if _, dup := keys[k.hash]; dup {
			return nil, fmt.Errorf("auth: API key file %s: entry %d (user %q): the same key hash appears twice", path, n, e.User)
		}
		k.user, k.tenant = e.User, e.Tenant
		keys[k.hash] = k
	}
	return keys, nil
}

var errUnknownKey = errors.New("unknown API key")

// lookup returns the entry of key.
func (ks apiKeys) lookup(key string) (apiKey, error) {
	sum := sha256.Sum256([]byte(key))
	k, ok := ks[sum]
	if !ok || subtle.ConstantTimeCompare(k.hash[:], sum[:]) != 1 {
		return apiKey{}, errUnknownKey
	}
	return k, nil
}
