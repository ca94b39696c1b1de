package redis

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"

	"github.com/valkey-io/valkey-go"
)

var (
	//go:embed lua/publish.lua
	publishLua string
	//go:embed lua/heads.lua
	headsLua string
	//go:embed lua/since.lua
	sinceLua string
	//go:embed lua/revoke.lua
	revokeLua string

	publish = newScript(publishLua)
	heads   = newScript(headsLua)
	since   = newScript(sinceLua)
	revoke  = newScript(revokeLua)
)

// script is a Lua script's source and SHA-1, for pipelined EVALSHA or EVAL.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// execMulti runs one script several times in one pipelined round trip,
// in order, with EVALSHA, loading the script once if Redis does not know it.
// Unlike valkey.Lua.ExecMulti it does not load the script on every call.
//
// The runs answered NOSCRIPT are sent again after the others, so execMulti
// keeps their order only when there is one: if Redis loses its script cache
// in the middle of the pipeline and another client loads the script again,
// a later run can succeed before an earlier one is re-sent. Callers send
// several runs only when their order does not matter (different channels).
func (b *Broker) execMulti(ctx context.Context, s *script, execs []valkey.LuaExec) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = b.client.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res := b.client.DoMulti(ctx, cmds...)
	var retry []int
	for i, r := range res {
		if ve, ok := valkey.IsValkeyErr(r.Error()); ok && ve.IsNoScript() {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return res
	}
	// Redis lost its script cache (restart, SCRIPT FLUSH): the commands that
	// failed ran nothing, so they are sent again, in their order, as EVAL.
	cmds = cmds[:0]
	for _, i := range retry {
		cmds = append(cmds, b.eval(s, execs[i]))
	}
	for j, r := range b.client.DoMulti(ctx, cmds...) {
		res[retry[j]] = r
	}
	return res
}

// eval is the EVAL command running s once with e's keys and arguments.
func (b *Broker) eval(s *script, e valkey.LuaExec) valkey.Completed {
	return b.client.B().Eval().Script(s.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
}
