"""The importers' exception root: the source cannot be read, or the machine cannot translate."""


class ImporterError(Exception):
    """Root of importer errors; the message says what to do next."""


class SourceInvalid(ImporterError, ValueError):
    """The source folder or one of its files is not in the format the importer reads."""
