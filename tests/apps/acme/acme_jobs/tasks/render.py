import os
import socket
import time

from acme_jobs.celery import app


@app.task(bind=True)
def thumbnail(self, image_id: str, seconds: float = 1.0) -> dict:
    started = time.time()
    time.sleep(seconds)
    return {
        "image": image_id,
        "hostname": self.request.hostname or socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "finished": time.time(),
        "seconds": seconds,
    }
