"""HTTP routes split by area: public, chat, agent, feedback, admin."""
