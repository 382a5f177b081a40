"""The referral inbox for people at a VCSE host (console pages in gateway/console/pages/inbox.py)."""
