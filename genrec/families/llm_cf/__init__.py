"""The pointwise and LLM-CF family: labelled (user, item) examples for CF models (MF) and the prompted LLM
models over them (TALLRec, CoLLM, LLaRA-style), with the CF tables one leaves for the other."""
