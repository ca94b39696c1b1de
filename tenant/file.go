package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
)

// File is a Membership read once from a JSON file (SLUICE_MEMBERSHIP=file:<path>):
//
//	{"<user>": ["<tenant>", …], …}
//
// A user absent from the file is a member of no tenant. It is safe for
// concurrent use.
type File struct {
	members map[string]map[string]struct{} // user → set of tenants
}

var _ Membership = (*File)(nil)

// NewFile reads and checks a membership file: it must be one JSON object
// whose values are arrays of canonical tenant UUIDs (channel.CheckTenant);
// errors name the offending user.
func NewFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenant: membership file: %w", err)
	}
	var raw map[string][]string
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("tenant: membership file %s: want {\"<user>\": [\"<tenant>\", …]}: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("tenant: membership file %s: data after the JSON object", path)
	}
	if raw == nil {
		return nil, fmt.Errorf("tenant: membership file %s: want a JSON object, got null", path)
	}
	f := &File{members: make(map[string]map[string]struct{}, len(raw))}
	for user, tenants := range raw {
		if user == "" {
			return nil, fmt.Errorf("tenant: membership file %s: empty user id", path)
		}
		set := make(map[string]struct{}, len(tenants))
		for _, t := range tenants {
			if err := channel.CheckTenant(t); err != nil {
				return nil, fmt.Errorf("tenant: membership file %s: user %q: tenant %q: %w", path, user, t, err)
			}
			set[t] = struct{}{}
		}
		f.members[user] = set
	}
	return f, nil
}

// ReadsCredential implements CredentialReader: false.
func (f *File) ReadsCredential() bool { return false }

// IsMember implements Membership: whether the file lists tenant for p.User.
func (f *File) IsMember(_ context.Context, p auth.Principal, tenant string) (bool, error) {
	_, ok := f.members[p.User][tenant]
	return ok, nil
}
