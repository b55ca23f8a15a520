"""HL7 v2 with the hospital's RIS: messages (built and read with hl7apy) and MLLP framing."""
