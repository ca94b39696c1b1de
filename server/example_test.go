package server_test

import (
	"fmt"

	"github.com/sluicehq/sluice/server"
)

// LoadConfig reads SLUICE_* variables and flags; a bad value is an error
// naming the variable, reported at start.
func ExampleLoadConfig() {
	getenv := func(k string) string {
		return map[string]string{"SLUICE_JWT_SECRET": "s3cret", "SLUICE_HISTORY_SIZE": "500"}[k]
	}
	cfg, err := server.LoadConfig([]string{"--keepalive", "20s"}, getenv, nil)
	fmt.Println(cfg.HistorySize, cfg.KeepAlive, err)

	_, err = server.LoadConfig([]string{"--history-ttl", "forever"}, getenv, nil)
	fmt.Println(err)
	// Output:
	// 500 20s <nil>
	// invalid value "forever" for flag -history-ttl: SLUICE_HISTORY_TTL: not a duration (use Go syntax such as 15s): "forever"
}
