"""The knowledge side of newsbot: load, chunk, embed, index, retrieve and answer.

Nothing here imports Discord; ``bot/`` builds on these modules.
"""
