package limits

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the networks of trusted reverse proxies: a request from one of
// them may name its client in X-Forwarded-For. The zero value trusts none.
type Proxies []netip.Prefix

// ParseProxies reads a list of CIDRs or single addresses
// (SLUICE_TRUSTED_PROXIES). An entry that is neither is an error naming it.
func ParseProxies(list []string) (Proxies, error) {
	var ps Proxies
	for _, t := range list {
		t = strings.TrimSpace(t)
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", t)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// Trusted reports whether a is the address of a trusted proxy.
func (ps Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range ps {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr returns r's client address: the peer address, or, when the
// peer is a trusted proxy, the rightmost address of X-Forwarded-For that is
// not itself a trusted proxy (an unreadable entry stops the walk: nothing
// further left is trusted). It suits Config.ClientAddr.
func (ps Proxies) ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err != nil || !ps.Trusted(a) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !ps.Trusted(a) {
			return a.Unmap().String()
		}
	}
	return host
}
