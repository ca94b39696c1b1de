package channel_test

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/channel"
)

func ExampleMake() {
	n, err := channel.Make("scan-progress", "3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59", "42")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n)
	fmt.Println(n.Prefix(), n.Resource())

	_, err = channel.Make("scan-progress", "3F1C2B4A-9D8E-4C7B-A6F5-0E1D2C3B4A59", "42")
	var ce *channel.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.Segment, errors.Is(err, channel.ErrTenant))
	}
	// Output:
	// scan-progress:3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59:42
	// scan-progress 42
	// tenant_id true
}

func ExampleParse() {
	n, err := channel.Parse("llm-chat:3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59:conv.7")
	fmt.Println(n.Tenant(), n.Resource(), err)

	_, err = channel.Parse("llm-chat:3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59:a/b")
	fmt.Println(err)
	// Output:
	// 3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59 conv.7 <nil>
	// channel: the resource id (third segment) must be 1-128 characters from A-Z a-z 0-9 . _ ~ - (resource_id); a channel name is <prefix>:<tenant uuid>:<resource>
}
