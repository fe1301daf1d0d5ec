// A Node client as most Node users write one: @grpc/proto-loader (protobufjs) loads protos/ as it
// is, @grpc/grpc-js calls the bank. Prints what it loaded and what the bank answered, as JSON.
// Usage: node proto_loader_client.cjs <protos dir> <host:port> <admin password>
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [protos, target, password] = process.argv.slice(2);

function protoFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return protoFiles(full);
    return entry.name.endsWith(".proto") ? [path.relative(protos, full)] : [];
  });
}

function call(client, method, request, metadata) {
  return new Promise((resolve) => {
    client[method](request, metadata || new grpc.Metadata(), { deadline: Date.now() + 10000 }, (error, answer) =>
      resolve(error ? { code: grpc.status[error.code], details: error.details } : { answer }),
    );
  });
}

async function main() {
  const files = protoFiles(protos).sort();
  const loaded = {};
  for (const file of files) {  // each file alone: one that protobufjs cannot parse is named
    protoLoader.loadSync(file, { includeDirs: [protos] });
    loaded[file] = true;
  }
  const definition = protoLoader.loadSync(files, { includeDirs: [protos], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const bank = grpc.loadPackageDefinition(definition);
  const services = Object.keys(definition).filter((name) => definition[name].service !== undefined || !("format" in definition[name]));
  const credentials = grpc.credentials.createInsecure();
  const identity = new bank.ogpgy.identity.v1.IdentityService(target, credentials);
  const token = await call(identity, "IssueToken", { username: "admin", password });
  if (!token.answer) throw new Error(`IssueToken: ${JSON.stringify(token)}`);
  const metadata = new grpc.Metadata();
  metadata.add("authorization", `Bearer ${token.answer.access_token}`);
  const accounts = new bank.ogpgy.account.v1.AccountService(target, credentials);
  const cash = await call(accounts, "GetInternalAccount", { internal_account: "INTERNAL_ACCOUNT_CASH", currency_code: "EUR" }, metadata);
  const refused = await call(accounts, "Transfer", { request_id: "no spaces allowed", description: "bell\u0007" }, metadata);
  const customers = new bank.ogpgy.customer.v1.CustomerService(target, credentials);
  const unknown = await call(customers, "GetCustomer", { customer_id: "cus_00000000000000000000000000" }, metadata);
  console.log(JSON.stringify({
    files: Object.keys(loaded).length,
    services: services.filter((name) => name.endsWith("Service")).sort(),
    token: token.answer.access_token.split(".").length,
    cash: cash.answer ? cash.answer.account_id : cash,
    refused: refused.code,
    unknown: unknown.code,
  }));
  for (const client of [identity, accounts, customers]) client.close();
}

main().catch((error) => { console.error(error); process.exit(1); });
