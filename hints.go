package sluice

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/stream"
)

// eventTypeHint says in words why an event name was refused by
// event.ValidType, quoting at most 64 bytes of it.
func eventTypeHint(name string, err error) string {
	q := name
	if len(q) > 64 {
		q = q[:64] + "…"
	}
	if errors.Is(err, event.ErrTypeReserved) {
		return "event " + strconv.Quote(q) + `: names starting with "stream-" are reserved for the server; ` +
			"name your events resource.verb, e.g. scan.progress"
	}
	return "event " + strconv.Quote(q) + " is not a valid event name: use resource.verb, two or more parts " +
		"separated by dots, each a lowercase letter followed by lowercase letters, digits or '_' " +
		"(e.g. scan.progress, demo.said, order_item.shipped), at most " + strconv.Itoa(event.MaxTypeLen) + " characters"
}

// channelProblems turns a *channel.Error returned by a feature's channels
// hook (e.g. channel.Make's error for a bad path value) into 400
// malformed_channel rather than a 500, as the generic endpoint and the
// routes file answer.
func channelProblems(resolve stream.ChannelsFunc) stream.ChannelsFunc {
	return func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
		chans, err := resolve(r, p)
		var ce *channel.Error
		if err != nil && errors.As(err, &ce) {
			if _, ok := problem.As(err); !ok {
				return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, ce.Error())
			}
		}
		return chans, err
	}
}
