"""The web page ``speechrag serve`` shows: plain HTML, CSS and JavaScript, no network."""
