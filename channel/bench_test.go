package channel

import (
	"strings"
	"testing"
)

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"short", joined("scan-progress", tenantA, "42")},
		{"longest", joined(strings.Repeat("a", 63), tenantA, strings.Repeat("r", 128))},
		{"invalid", joined("scan-progress", strings.ToUpper(tenantA), "42")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_, _ = Parse(bc.in)
			}
		})
	}
}

func BenchmarkMake(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Make("scan-progress", tenantA, "42")
	}
}
