FROM python:3.11-slim

# Wheels for Pillow, pycurl and OpenCV carry their own native libraries.
WORKDIR /app
COPY pyproject.toml README.rst ./
COPY imgproxy ./imgproxy
RUN pip install --no-cache-dir . \
    && useradd --system --no-create-home --uid 10001 imgproxy

USER imgproxy
EXPOSE 8888
ENTRYPOINT ["imgproxy", "--address=0.0.0.0", "--port=8888"]
