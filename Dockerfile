FROM python:3.11-slim

# Wheels for Pillow, pycurl and OpenCV carry their own native libraries.
WORKDIR /app
COPY pyproject.toml README.rst ./
COPY imgproxy ./imgproxy
RUN pip install --no-cache-dir . \
    && useradd --system --no-create-home --uid 10001 imgproxy \
    && mkdir -p /var/lib/imgproxy && chown imgproxy /var/lib/imgproxy

# The job queue's default file (imgproxy-state/jobs.sqlite3) goes here; mount a volume to keep it.
WORKDIR /var/lib/imgproxy
USER imgproxy
EXPOSE 8888
# The slim image has no curl: Python asks /health (urlopen fails on its 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/health', timeout=4)"]
ENTRYPOINT ["imgproxy", "--address=0.0.0.0", "--port=8888"]
