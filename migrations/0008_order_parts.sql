-- An order's lines, addresses and payment as one JSON document, in the shape of the API's
-- order (order-service/src/domain/order.rs). Reading an order is then one statement, and so is
-- changing its status, which returns the changed row with these unchanged parts in the same
-- round trip (order-service/src/db/orders.rs, db/status_change.rs).
CREATE FUNCTION order_parts(order_id uuid) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'items', (SELECT coalesce(json_agg(json_build_object(
                             'sku', i.sku, 'name', i.name, 'quantity', i.quantity,
                             'unit_price_minor', i.unit_price_minor,
                             'line_total_minor', i.line_total_minor) ORDER BY i.line_no), '[]')
                  FROM order_items i WHERE i.order_id = $1),
        'shipping_address', (SELECT json_build_object(
                                 'name', a.name, 'line1', a.line1, 'line2', a.line2, 'city', a.city,
                                 'region', a.region, 'postal_code', a.postal_code,
                                 'country', a.country)
                             FROM order_addresses a WHERE a.order_id = $1 AND a.kind = 'shipping'),
        'billing_address', (SELECT json_build_object(
                                'name', a.name, 'line1', a.line1, 'line2', a.line2, 'city', a.city,
                                'region', a.region, 'postal_code', a.postal_code,
                                'country', a.country)
                            FROM order_addresses a WHERE a.order_id = $1 AND a.kind = 'billing'),
        'payment', (SELECT json_build_object(
                        'id', p.id, 'method', p.method, 'status', p.status,
                        'amount_minor', p.amount_minor, 'currency', p.currency)
                    FROM payments p WHERE p.order_id = $1))
$$;
