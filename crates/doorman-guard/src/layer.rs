//! The tower form of the guard: wrap any service so that only authenticated requests reach
//! it; the [`Authenticated`](crate::Authenticated) caller is put in the request extensions.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::Request;
use tower::{Layer, Service};

use crate::Guard;

/// Wraps services in [`RequireToken`].
#[derive(Clone)]
pub struct RequireTokenLayer {
    guard: Guard,
}

impl RequireTokenLayer {
    pub fn new(guard: Guard) -> RequireTokenLayer {
        RequireTokenLayer { guard }
    }
}

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> RequireToken<S> {
        RequireToken {
            guard: self.guard.clone(),
            inner,
        }
    }
}

/// A service that answers 401 unless the request carries a valid access token.
#[derive(Clone)]
pub struct RequireToken<S> {
    guard: Guard,
    inner: S,
}

impl<S> Service<Request<Body>> for RequireToken<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let guard = self.guard.clone();
        // The clone is not ready; swap so the ready one serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match guard.authenticate(request.headers()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response_for(&guard)),
            }
        })
    }
}
