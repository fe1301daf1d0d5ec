// A Node client that checks a request against the contract's rules before sending it, with
// @bufbuild/protovalidate on the code buf generated from protos/ (tests/contract/test_other_languages.py).
// Prints one JSON line: the field paths of the violations of a bad request, and whether a good
// one is valid.
import { create, createRegistry } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { TransferRequestSchema } from "./ts/ogpgy/account/v1/account_service_pb.js";
import { CreatePaymentRequestSchema } from "./ts/ogpgy/payment/v1/payment_service_pb.js";
import { file_ogpgy_type_v1_rules } from "./ts/ogpgy/type/v1/rules_pb.js";

// The bank's own rules (request_id, id_prefix, ...) are predefined rules: the validator learns them
// from the file that defines them.
const validator = createValidator({ registry: createRegistry(file_ogpgy_type_v1_rules) });

function paths(result: ReturnType<typeof validator.validate>): string[] {
  if (result.kind === "error") throw result.error;
  return result.kind === "invalid" ? result.violations.map((v) => v.toString().split(":")[0]) : [];
}

const bad = create(TransferRequestSchema, {
  requestId: "no spaces allowed",
  debitAccountId: "cus_1",
  creditAccountId: "",
  description: "bell\u0007",
});
const good = create(TransferRequestSchema, {
  requestId: "t-1",
  debitAccountId: "acc_1",
  creditAccountId: "acc_2",
  amount: { currencyCode: "EUR", amount: "1.00" },
});
const noBeneficiary = create(CreatePaymentRequestSchema, { requestId: "p-1", debtorAccountId: "acc_1" });

console.log(
  JSON.stringify({
    bad: paths(validator.validate(TransferRequestSchema, bad)),
    good: validator.validate(TransferRequestSchema, good).kind,
    payment: paths(validator.validate(CreatePaymentRequestSchema, noBeneficiary)),
  }),
);
