"""The answer layer: what answers a customer, below serving, eval, chat and the demo.

Model loading, chat templates, the engines and the answer pipeline live here, so every face (the HTTP gateway,
`kefu eval`, `kefu chat`, `kefu demo`) produces the same answer for the same conversation.
"""
