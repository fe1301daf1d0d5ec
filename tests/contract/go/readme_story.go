// Part of the README story from Go, with the code buf generates from protos/ and the Go gRPC and
// protobuf libraries Debian ships (GOPATH mode, offline). Prints what the bank answered as JSON.
// Usage: readme_story <host:port> <admin password>
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	accountv1 "github.com/ogpgy/bank-mesh/gen/go/ogpgy/account/v1"
	customerv1 "github.com/ogpgy/bank-mesh/gen/go/ogpgy/customer/v1"
	identityv1 "github.com/ogpgy/bank-mesh/gen/go/ogpgy/identity/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	target, password := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("dial", err)
	}
	defer conn.Close()

	token, err := identityv1.NewIdentityServiceClient(conn).IssueToken(ctx, &identityv1.IssueTokenRequest{Username: "admin", Password: password})
	if err != nil {
		fail("IssueToken", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token.AccessToken)
	accounts := accountv1.NewAccountServiceClient(conn)
	cash, err := accounts.GetInternalAccount(ctx, &accountv1.GetInternalAccountRequest{
		InternalAccount: accountv1.InternalAccount_INTERNAL_ACCOUNT_CASH, CurrencyCode: "EUR",
	})
	if err != nil {
		fail("GetInternalAccount", err)
	}
	customer, err := customerv1.NewCustomerServiceClient(conn).GetCustomer(ctx, &customerv1.GetCustomerRequest{
		CustomerId: "cus_00000000000000000000000000",
	})
	unknown := status.Code(err).String()
	if customer != nil {
		unknown = "found"
	}
	_, err = accounts.Transfer(ctx, &accountv1.TransferRequest{RequestId: "no spaces allowed", Description: "bell\a"})
	refused := status.Convert(err)
	violations := map[string]string{} // field -> reason, as the README documents them
	for _, detail := range refused.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			for _, v := range bad.GetFieldViolations() {
				violations[v.GetField()] = v.GetReason()
			}
		}
	}
	out, _ := json.Marshal(map[string]interface{}{
		"cash":       cash.GetAccountId(),
		"unknown":    unknown,
		"refused":    refused.Code().String(),
		"violations": violations,
	})
	fmt.Println(string(out))
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}
