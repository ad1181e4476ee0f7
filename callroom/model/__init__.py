"""The model every part of callroom shares and that imports none of them: the records the store keeps
(``records``), the lifecycles and their transition tables (``states``), the instructions and facts that
pass between the control plane and the media plane (``media``), the messages that cross a process
(``messages``) and their one codec (``codec``)."""
