package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sluicehq/sluice/client"
)

func ExampleReader() {
	stream := "retry: 2000\nid: c1\nevent: scan.progress\ndata: {\"pct\":10}\n\n: keep-alive\n\n"
	rd := client.NewReader(strings.NewReader(stream), 0)
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		fmt.Println(ev.ID, ev.Type, ev.Data)
	}
	retry, _ := rd.Retry()
	fmt.Println("retry", retry)
	// Output:
	// c1 scan.progress {"pct":10}
	// retry 2s
}

func ExampleSubscribe() {
	// A stand-in for a Sluice server that ends the stream at once.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		fmt.Fprint(w, "retry: 2000\nid: c0\nevent: stream-open\ndata: {\"channels\":[\""+r.URL.Query().Get("channel")+"\"]}\n\n")
		fmt.Fprint(w, "id: c1\nevent: scan.progress\ndata: {\"pct\":10}\n\n")
		fmt.Fprint(w, "event: stream-error\ndata: {\"condition\":\"access-revoked\",\"text\":\"membership withdrawn\"}\n\n")
	}))
	defer srv.Close()

	s := client.Subscribe(context.Background(), client.Config{
		URL:      srv.URL,
		Channels: []string{"scan-progress:3f1c2a4e-1b2c-4d5e-8f90-123456789abc:42"},
		Token:    func(ctx context.Context) (string, error) { return "a fresh JWT", nil },
	})
	defer s.Close()
	for it, err := range s.All() {
		switch v := it.(type) {
		case client.Open:
			fmt.Println("open", v.Channels, "at", v.Cursor)
		case client.Message:
			fmt.Println("message", v.Type, v.Data)
		case client.Reset:
			fmt.Println("refetch state:", v.Reason)
		case client.Ended:
			fmt.Println("ended:", v.Condition)
		case client.Reconnecting:
			fmt.Println("reconnecting in", v.Delay)
		}
		if err != nil {
			fmt.Println("stopped:", err)
		}
	}
	// Output:
	// open [scan-progress:3f1c2a4e-1b2c-4d5e-8f90-123456789abc:42] at c0
	// message scan.progress {"pct":10}
	// ended: access-revoked
	// stopped: client: access revoked
}
