"""The manager's half of the local endpoint: the API routes, authentication, the
scheduler, GraphQL, events and the session registry (Backend.AI's ``manager``)."""
