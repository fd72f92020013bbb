"""An ILLiad import mailbox in the directory (`options:`): its markers, as ILLiad's EMailImport
table has them (marker text -> ILLiad field), and its OpenURL base for staff."""

from __future__ import annotations

from pydantic import Field

from connectors.mail.options import MailPartnerOptions

# Canonical field -> ILLiad Transactions field (the EMailImport table's FieldName column).
# Username is required by ILLiad and comes from the patron id.
DEFAULT_MARKERS: dict[str, str] = {
    "Username:": "Username",
    "Request Type:": "RequestType",
    "Document Type:": "DocumentType",
    "Title:": "LoanTitle",
    "Author:": "LoanAuthor",
    "Publisher:": "LoanPublisher",
    "Place:": "LoanPlace",
    "Date:": "LoanDate",
    "Edition:": "LoanEdition",
    "Journal Title:": "PhotoJournalTitle",
    "Article Title:": "PhotoArticleTitle",
    "Article Author:": "PhotoArticleAuthor",
    "Volume:": "PhotoJournalVolume",
    "Issue:": "PhotoJournalIssue",
    "Year:": "PhotoJournalYear",
    "Pages:": "PhotoJournalInclusivePages",
    "ISSN/ISBN:": "ISSN",
    "OCLC Number:": "ESPNumber",
    "Call Number:": "CallNumber",
    "Not Wanted After:": "NotWantedAfter",
    "Notes:": "Notes",
    "Request Id:": "ILLNumber",
}


class IlliadEmailOptions(MailPartnerOptions):
    markers: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_MARKERS),
        description="marker text -> ILLiad field, in the order written (ILLiad's EMailImport)",
    )
    openurl_base: str | None = Field(
        None, description="ILLiad's illiad.dll URL; adds the Action=10&Form=30 link for staff"
    )
