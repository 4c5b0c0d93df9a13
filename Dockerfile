FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine engine
COPY api api
COPY persistence persistence
COPY notify notify
COPY benchmarks benchmarks
RUN pip install --no-cache-dir .

RUN useradd --create-home --uid 10001 tickets
USER tickets
EXPOSE 8000
ENV TICKETS_HOST=0.0.0.0
CMD ["tickets", "serve"]
