"""The endpoint drivers of the API process: how the control plane's media instructions reach far ends.

    virtual         virtual phones: far ends inside the node (their signalling here, their audio in the
                    media process)
    media_process   the media process, which hosts the SIP phones and every leg's audio: started, told and
                    heard from here
"""
