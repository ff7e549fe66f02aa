# The LTI media tool: one image for the web (gunicorn, the default command), the workers and
# the scheduler (compose.yaml gives each its command). Build: docker build -t lti-tool .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg and ffprobe process uploaded video and audio (the workers need them).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 lti-tool \
    && useradd --system --uid 10001 --gid lti-tool --home-dir /var/lib/lti-tool \
       --shell /usr/sbin/nologin lti-tool

# The same paths as the systemd install (deploy/systemd/): code and virtualenv in
# /srv/lti-tool, media in /srv/lti-tool/media, the instance folder in /var/lib/lti-tool.
WORKDIR /srv/lti-tool
RUN python -m venv .venv
ENV PATH=/srv/lti-tool/.venv/bin:$PATH
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY . .
RUN mkdir -p media /var/lib/lti-tool \
    && chown lti-tool:lti-tool media /var/lib/lti-tool

ENV MEDIA_ROOT=/srv/lti-tool/media \
    INSTANCE_PATH=/var/lib/lti-tool \
    BIND=0.0.0.0:8000
USER lti-tool
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
