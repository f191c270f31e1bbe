{#- The status flags gold reads from the order_statuses seed say what SPEC section 7 says:
    revenue = paid, shipped, delivered; returned and cancelled are their own statuses. -#}

select order_status, is_revenue, is_returned, is_cancelled
from {{ ref('order_statuses') }}
where is_revenue != (order_status in ('paid', 'shipped', 'delivered'))
    or is_returned != (order_status = 'returned')
    or is_cancelled != (order_status = 'cancelled')
