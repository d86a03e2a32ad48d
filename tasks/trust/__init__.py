"""Who may tell a node worker what to do, and who may read what (contracts in each module).

- ``keys``: the key material of the control side (one master key, every other key derived from it) and
  of each node worker (its own X25519 key pair), the pins each side keeps of the other's public keys.
- ``seal``: authenticated encryption of run state values, to the control side or to one node, bound
  to run, cluster, node and field.
- ``tokens``: the signed authorisation a task carries, and the signature over a run's metadata.
- ``journal``: a node's own record of the newest dispatch it ran, kept on the node, not in Redis.
"""
