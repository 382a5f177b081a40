"""What a valid inbound resource is: profile rules, NHS number checks, code bindings, OperationOutcomes."""
