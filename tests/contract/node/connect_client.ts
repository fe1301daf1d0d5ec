// A Node client of the bank's HTTP port, over the Connect protocol and over gRPC-Web, with the
// code buf generated from protos/ (tests/integration/test_http_access.py). Arguments: the base URL
// and a bearer token. Prints one JSON line of what it saw.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "./ts/google/rpc/error_details_pb.js";
import { CustomerService } from "./ts/ogpgy/customer/v1/customer_service_pb.js";

const [baseUrl, token] = process.argv.slice(2);
const bearer: Interceptor = (next) => (request) => {
  request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

async function over(protocol: "connect" | "grpc-web") {
  const options = { baseUrl, httpVersion: "1.1" as const, interceptors: [bearer] };
  const transport = protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
  const customers = createClient(CustomerService, transport);
  const listed = await customers.listCustomers({ pageSize: 5 });
  try {
    await customers.getCustomer({ customerId: "not-an-id" });
    return { protocol, listed: listed.customers.length, error: "none" };
  } catch (e) {
    const error = ConnectError.from(e);
    return {
      protocol,
      listed: listed.customers.length,
      error: Code[error.code],
      fields: error.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field)),
      reason: error.findDetails(ErrorInfoSchema).map((i) => i.reason)[0],
    };
  }
}

console.log(JSON.stringify([await over("connect"), await over("grpc-web")]));
