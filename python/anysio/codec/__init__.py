"""From JSON to the handlers' types and back: ``coerce`` plans each handler's validation once (pydantic), ``wire``
swaps binary attachments in and out of event arguments and writes their JSON."""
